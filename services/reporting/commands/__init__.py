"""The reporting service's operator commands (`python -m services.reporting <command>`).

Each module here is one command: `add_arguments(parser)` declares its options and
`async run(args, settings) -> int` does the work, drawing its progress on stderr with
`shared.progress.ProgressBar`, and returns the exit status (0 success, 1 a failure it reports).
`services/reporting/cli.py` lists them.
"""
