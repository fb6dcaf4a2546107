"""The torch decoding engine for rollouts: the HF completer, its KV-cache and shared-prefix helpers.

``hf_completer`` holds ``HFCompleter`` (``data_tools.completers``' protocol, in-process) and
``load_completer``; ``kv_cache`` a cache layer that grows in place; ``shared_prefix`` attention
that reads a common prefix once. Importing this package loads no torch: the completer imports it when
it runs, and ``kv_cache``/``shared_prefix`` are imported only then.
"""

from prm.generation.hf_completer import HFCompleter, hf_completer, load_completer

__all__ = ["HFCompleter", "hf_completer", "load_completer"]
