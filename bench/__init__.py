"""The project's benchmark: ``python -m bench --scale small|full [--only MEASURE]``.

It builds its own PostgreSQL database through the project's bulk paths, measures the
portal (services, HTTP under gunicorn, background tasks) and, in the same run, what raw
SQL does for the same work, and prints one JSON object per measure. docs/performance.md
explains the measures and holds the latest full run.
"""
