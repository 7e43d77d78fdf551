"""`python ingest.py PATH...`: index files and folders (the code is rag/ingest.py; `rag-chat ingest` runs the same)."""

import sys

from rag.ingest import main

if __name__ == "__main__":
    sys.exit(main())
