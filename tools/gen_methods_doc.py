"""Write docs/methods.md from ltlab's registries (ltlab.methods_ref.methods_markdown)."""
from pathlib import Path

from ltlab.methods_ref import methods_markdown

if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "docs" / "methods.md"
    out.write_text(methods_markdown())
    print(f"wrote {out}")
