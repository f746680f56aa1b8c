"""The engine imports without peft, and its config side imports without torch (the web process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK = textwrap.dedent(
    """
    import sys
    class _Block:
        def __init__(self, names): self.names = names
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.names:
                raise ImportError(f"blocked import of {name}")
    sys.meta_path.insert(0, _Block(BLOCKED))
    """
)


def _run(code: str, blocked: set[str]) -> subprocess.CompletedProcess:
    script = BLOCK.replace("BLOCKED", repr(blocked)) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


def test_engine_works_without_peft_installed():
    result = _run(
        """
        import torch, peft_core
        from tests.peft_core.models import MLP
        model = peft_core.get_peft_model(MLP(), peft_core.LoraConfig(target_modules=["lin0"]))
        model(torch.tensor([[1, 2, 3, 4, 5]]))
        from tests.peft_core.models import tiny_llama
        peft_core.get_peft_model(tiny_llama(), peft_core.LoraConfig(task_type="CAUSAL_LM"))
        print("ok")
        """,
        {"peft"},
    )
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_methods_and_schemas_load_without_torch():
    result = _run(
        """
        import peft_core
        from peft_core.registry import registered_methods
        methods = registered_methods()
        assert "LORA" in methods, methods
        schema = methods["LORA"].config_cls.json_schema()
        assert schema["properties"]["r"]["default"] == 8
        cfg = peft_core.PeftConfig.from_dict({"peft_type": "LORA", "r": 4, "target_modules": ["q"]})
        print(type(cfg).__name__)
        """,
        {"torch", "transformers"},
    )
    assert result.returncode == 0, result.stderr
    assert "LoraConfig" in result.stdout
