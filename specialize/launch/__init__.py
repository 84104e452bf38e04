"""Running specialize beyond one process: torchrun on bare metal / Slurm, JobSet manifests for Kubernetes.

``torchrun``: the launcher every node runs; ``k8s``: the JobSet manifest that runs it in pods;
``smoke``: a distributed check of the fabric; ``worker``: what each torchrun worker process executes.
"""
