from graylogic_supervisor.cli import main

raise SystemExit(main())
