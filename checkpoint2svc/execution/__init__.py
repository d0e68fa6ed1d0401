"""Run the pinned cell on a state: the executor (isolated or shared), what isolation restores,
the global random generators, and how outputs differ from the pinned examples. Pinning (inside
the kernel) and an instance (``runtime``) both run the cell through it."""
