"""Quality scrubbing: rule-based filters per domain, secret detection, a trainable quality model,
and per-source up-sampling. Each is a plain function over text or a Document; ``beam_jobs/quality.py``
wires them into the pipeline. Thresholds come from the domain profile (``filters:``), never from code.
"""
