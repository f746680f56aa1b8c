"""PEFT Studio: the web app, its settings, database and services. Never imports torch."""
