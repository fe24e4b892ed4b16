"""Core rubrics shipped with judge, as YAML data. Installed as the package ``judge_rubrics``."""
