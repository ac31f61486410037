"""The residency Pulumi program's components (importable only with the ``[infra]`` extra)."""
