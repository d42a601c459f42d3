from services.loader.cli import main

raise SystemExit(main())
