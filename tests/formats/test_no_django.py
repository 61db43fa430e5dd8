import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_formats_do_not_import_django():
    code = (
        "import formats.keys, formats.blocks, formats.frames, formats.manifests, "
        "formats.chunking, formats.errors, formats.manifest_frames, sys; "
        "assert 'django' not in sys.modules, sorted(m for m in sys.modules if 'django' in m)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
