#!/usr/bin/env bash
# Runs a Python component's own tests natively with the pinned pytest, the
# SDK (components/wharf-py) importable: scripts/pytest.sh components/NAME
source "$(dirname "$0")/lib.sh"
ensure_python_tools
PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=components/wharf-py exec "$PYTEST" -q -p no:cacheprovider "$@"
