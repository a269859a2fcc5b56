"""Contracts shared by the runner, the operator and the gateway: how they talk to each other
(codecs, headers, settings, the shape of a run) and how they change a Kubernetes object
safely. Pure code: no HTTP framework, no Kubernetes client, no runner internals, so that
every component can import it and a test can read it."""
