"""One run from start to record: its lifecycle (lifecycle.py, shared by every launcher), the
run itself (runner.py: skip, resume or refuse, under its folder's lock), the record files
written atomically (record.py), the lock (lock.py) and Ctrl-C/SIGTERM (interrupt.py)."""
