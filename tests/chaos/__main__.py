from tests.chaos.matrix import main

raise SystemExit(main())
