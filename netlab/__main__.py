from netlab.cli.main import main

raise SystemExit(main())
