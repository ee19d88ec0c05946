"""Help > About: the versions this app runs on and where it keeps its files."""
from importlib import metadata

PACKAGES = (("LoRA Switchboard", "lora-switchboard"), ("torch", "torch"), ("transformers", "transformers"),
            ("PEFT", "peft"))


def versions(qt: str, binding: str) -> list[tuple[str, str]]:
    """(name, version) of the app and what it runs on; qt, binding: Qt's and PySide6's versions."""
    import platform

    found = []
    for name, dist in PACKAGES:
        try:
            found.append((name, metadata.version(dist)))
        except metadata.PackageNotFoundError:
            found.append((name, "not installed"))
    return found + [("Qt", qt), ("PySide6", binding), ("Python", platform.python_version())]
