"""Studies: verdicts, figures, and the commands behind the reports (compare, recipes, ...)."""
