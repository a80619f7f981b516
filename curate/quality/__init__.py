"""Quality checks over a store: contract rules, suspicious segments, agreement, coverage."""
