"""What the user sees: status table, dashboard, live view, plain lines, timeline, output formats."""
