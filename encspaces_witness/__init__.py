"""The encspaces witness: cosigns a space's checkpoints if they are consistent with what it
cosigned before (C2SP tlog-witness), and tells anyone its latest cosigned checkpoint."""
