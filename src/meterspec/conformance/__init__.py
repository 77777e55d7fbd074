"""The conformance harness: load the suite, drive an implementation through it, report.

See conformance/INTERPRETING.md for the design this package implements."""
