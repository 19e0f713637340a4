"""`python -m shared.uploader`: see shared/uploader/cli.py and docs/uploader.md."""

from shared.uploader.cli import main

raise SystemExit(main())
