from kdiff.cli import main

raise SystemExit(main())
