"""Build a service's container image: base image, wheelhouse, Dockerfile, docker build, self-test.

Nothing here ever pulls from a registry: every image is built from local tags.
"""
