"""``python -m litvision.compare``: the command ``litvision analyze compare``, under its first name."""

from litvision.analysis.compare import default_name, load, main, markdown, summarize, table

__all__ = ["default_name", "load", "main", "markdown", "summarize", "table"]

if __name__ == "__main__":
    main()
