from checkpoint2svc.cli import main

raise SystemExit(main())
