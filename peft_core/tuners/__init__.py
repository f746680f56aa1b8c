"""Tuner implementations. Every module or package here registers itself on import; the registry
imports them all on first use (see peft_core.registry), so a new tuner is a new file and nothing else."""
