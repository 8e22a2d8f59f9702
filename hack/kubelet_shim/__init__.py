"""Kubelet stand-in (no kubelet with a CRIU runtime can run here).

Serves HTTPS like a kubelet's :10250 and answers the API server's node proxy:

    POST /checkpoint/{namespace}/{pod}/{container}?timeout=S
        -> 200 {"items": ["<checkpoint dir>/checkpoint-<pod>_<ns>-<ctr>-<time>.tar"]}

by checkpointing the REAL runc container of that pod (started earlier with
`hack/runc-pod.sh start PODS/<ns>_<pod>_<container> ...`) with CRIU, leaving it running, into a
kubelet-format archive in the checkpoint folder — what the kubelet + CRI runtime do. Unknown pods
get 404, failures 500, both as a Kubernetes Status. It does not authenticate callers: it listens
on loopback only, for the lab's API servers. Also: GET /healthz, and
GET /containerLogs/{namespace}/{pod}/{container}[?tailLines=N] (what `kubectl logs` asks for).

    kubelet-shim.py --port P --cert C --key K --pods DIR --checkpoint-dir OUT

Node mode: the whole kubelet of one worker node
-----------------------------------------------
    kubelet-shim.py --node NAME --kubeconfig FILE (--state-dir DIR | --pods DIR) [--port P]
        [--address 127.0.0.1] [--insecure-registry HOST:PORT]... [--registry HOST]...
        [--registry-user U --registry-password-file F] [--registry-auth-file DOCKER_CONFIG_JSON]
        [--cpu 4 --memory 8Gi --max-pods 110] [--node-label K=V]... [--stop-containers-on-exit]

With --node the shim also, like a kubelet:
  * registers the Node NAME (created if missing; labels kubernetes.io/hostname, os, arch and every
    --node-label): InternalIP = --address, daemonEndpoints.kubeletEndpoint.Port = its HTTPS port,
    capacity/allocatable (cpu, memory, pods, ephemeral-storage), nodeInfo, and the conditions
    MemoryPressure/DiskPressure/PIDPressure False + Ready True, whose lastHeartbeatTime it refreshes
    every 10 s; and renews the Lease kube-node-lease/NAME (holderIdentity NAME,
    leaseDurationSeconds 40) every 5 s. A real kube-controller-manager so sees the node healthy, and
    marks it Ready=Unknown (then taints it unreachable) once the shim is gone for longer than its
    --node-monitor-grace-period. A deleted Node is registered again.
  * polls (every second) the pods with spec.nodeName == NAME and runs each container as a REAL
    runc container in PODS/<namespace>_<pod>_<container> (so the checkpoint endpoint serves it):
      - a checkpoint image (the registry's index or manifest, or a descriptor or layer in it,
        carries the annotation io.kubernetes.cri-o.annotations.checkpoint.name or
        org.criu.checkpoint.container.name; OCI index -> manifest -> one tar layer that IS the
        kubelet checkpoint archive) is pulled with skopeo and RESTORED with runc + CRIU
        (`hack/runc-pod.sh restore`), left running; the counter value at checkpoint is written to
        PODS/<ns>_<pod>_<ctr>/restored-from (`hack/runc-pod.sh count DIR` prints the live value);
      - docker.io/library/busybox (any tag or digest; not pullable here: no internet) runs as a
        STAND-IN: the local busybox-static counter of `hack/runc-pod.sh start` (its command/args are
        not used), what the lab's counter/video workloads and the e2e rely on;
      - any other image is PULLED and RUN (oci.py, podspec.py, volumes.py): `skopeo copy` by digest
        (the digest the registry resolves the tag to) into an OCI layout cached per digest in
        STATE/images/ (a restart does not pull again; imagePullPolicy: Always asks the registry for
        the digest, IfNotPresent / Never use the cache, Never without it -> ErrImageNeverPull),
        `umoci unpack` into PODS/<ns>_<pod>_<ctr>/bundle, and `runc run` (foreground, under a
        detached `sh` monitor that records the exit code) of a config.json built from the pod: the
        Kubernetes command/args vs Entrypoint/Cmd rules; env = the image's Env, then envFrom and env
        (value with $(VAR) expansion, fieldRef metadata.name/namespace/uid/labels['x']/
        annotations['x'], spec.nodeName, spec.serviceAccountName, status.hostIP/podIP, secretKeyRef,
        configMapKeyRef, optional), and KUBERNETES_SERVICE_HOST/PORT = the API server the shim
        talks to, so in-cluster config works; WorkingDir/User of the image; securityContext
        runAsUser/runAsGroup/runAsNonRoot/fsGroup/supplementalGroups/readOnlyRootFilesystem/
        allowPrivilegeEscalation/privileged/capabilities; HOST NETWORKING (no network namespace,
        no CNI here): ports bind on the node's addresses, podIP = hostIP = --address; /etc/hosts
        maps the pod's hostname and kubernetes.default.svc to it. Volumes under
        STATE/volumes/<pod uid>/ bind-mounted (subPath, subPathExpr, readOnly): secret, configMap,
        downwardAPI, projected (serviceAccountToken from the TokenRequest API, bound to the pod,
        rewritten at 80% of its life; configMap — kube-root-ca.crt falls back to the shim's CA
        when the cluster has no such ConfigMap, as a v1.20 lab without controller-manager — secret,
        downwardAPI) written the kubelet's atomic way and mounted read-only; emptyDir (medium
        Memory: a tmpfs); hostPath with its type check. The v1.20 ServiceAccount admission's
        token-Secret volume is a secret volume. Logs: PODS/.../container.log (+ previous.log),
        served to `kubectl logs`. The checkpoint endpoint refuses these containers.
        Not supported: CNI / pod IPs / Services' cluster IPs, probes, resource limits and requests
        (no cgroup limits), init containers (reported Completed, not run), ephemeral containers,
        shared PID/IPC namespaces between a pod's containers, resourceFieldRef, other volume types
        (PVCs, nfs, ...), image garbage collection, checkpointing pulled-image containers.
    Registries: checkpoint images are looked for only on a loopback registry, an
    --insecure-registry (plain HTTP / unverified TLS) or a --registry (verified TLS); other
    registries are pulled from with verified TLS (unreachable from this machine: ErrImagePull).
    Registry credentials: --registry-user with
    --registry-password-file (for the image's registry), --registry-auth-file and the pod's
    imagePullSecrets (kubernetes.io/dockerconfigjson); they go to skopeo in a 0600 auth file,
    never on a command line or in the log.
    It then patches the pod status as the kubelet does: phase Running, conditions
    Initialized/Ready/ContainersReady/PodScheduled True, containerStatuses (image, imageID,
    containerID runc://<id>, ready, started, state.running.startedAt, restartCount), podIP and
    hostIP = --address. A failed pull or restore/start leaves the container waiting with a
    kubelet-like reason (ErrImagePull, ImagePullBackOff, ErrImageNeverPull, CreateContainerConfigError
    naming the missing Secret/ConfigMap or key, ContainerCreating with the volume's MountVolume.SetUp
    error, CreateContainerError with runc's message, CrashLoopBackOff)
    and a message naming the cause, retried with back-off (10 s doubling, at most
    --max-start-attempts tries, then left waiting). A container that dies is restarted the same
    way (restartPolicy Never, or OnFailure after exit 0: left terminated with the pulled image's
    real exit code and termination message; the pod Succeeded / Failed). Init containers are
    reported Completed, not run.
  * a pod with a deletionTimestamp: its containers are stopped (runc kill; pulled images get
    SIGTERM and at most min(grace period, 10 s) before SIGKILL; their volumes are unmounted and
    removed, their rootfs deleted) and the pod deleted with
    gracePeriodSeconds=0 (uid precondition), as the kubelet finishes a deletion; a pod that
    vanished from the API: its containers are stopped. A stopped container's folder is kept with a
    `stopped` file (the checkpoint endpoint then answers 404).
  * restarted, it adopts the still-running containers of its pods (PODS/*/pod-uid) and stops the
    ones whose pod is gone.
  * SIGTERM/SIGINT: stops serving, heartbeats and Lease renewal at once; containers are left
    running (a kubelet restart) unless --stop-containers-on-exit.

A node crash is simulated by killing the shim AND stopping its containers:
    kill -9 <shim pid>; for d in PODS/*/; do hack/runc-pod.sh stop "$d"; done
(or: kill -TERM with --stop-containers-on-exit). The Lease is then no longer renewed and the
controller-manager turns the Node Ready=Unknown after its node-monitor grace period.

Only the Python standard library is used; the API is reached with urllib using the kubeconfig's
server, CA and bearer token (or client certificate); the kubeconfig is read with
`kubectl config view --raw --flatten` (--kubectl, $LAB_KUBECTL or kubectl on PATH) when there is
one, else with a small parser for flat kubeconfigs like the lab's.
"""

# Modules: cli (arguments, main), http_api (the HTTPS endpoint), kube (API client), node and pods
# (NodeShim: registration + Lease, pod sync), images (checkpoint image pulls, the OCI image cache),
# oci (image config, umoci unpack, the runc monitor), podspec (pod spec + image config -> runc config,
# pure), volumes (pod volumes, tokens), runtime (runc helpers), util (logging, time formats, small
# file helpers). hack/kubelet-shim.py is the launcher; hack/test-shim-images.sh the real smoke test.
