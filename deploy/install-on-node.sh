#!/bin/sh
# The skiff-installer DaemonSet's container (daemonset.yaml): installs skiff
# on its node, then stays, so that the DaemonSet shows the node's status.
# The host's /usr/local, /etc/crio, /etc/containerd and /run are mounted
# below /host; hostPID lets nsenter reach the host's systemd and QEMU.
set -eu

: "${SKIFF_RUNTIME:?set SKIFF_RUNTIME to crio or containerd}"
: "${NODE_NAME:?set NODE_NAME from the downward API (spec.nodeName)}"
case "$SKIFF_RUNTIME" in
crio | containerd) ;;
*) echo "skiff-installer: SKIFF_RUNTIME=$SKIFF_RUNTIME: use crio or containerd" >&2; exit 1 ;;
esac

# Copy through a temporary name, so that a running skiff is never half
# overwritten.
put() { # SRC DST MODE
	mkdir -p "$(dirname "$2")"
	cp "$1" "$2.skiff-new"
	chmod "$3" "$2.skiff-new"
	mv -f "$2.skiff-new" "$2"
}
put /skiff/bin/skiff /host/usr/local/bin/skiff 0755
for f in vmlinux initramfs.img guest.json; do
	put "/skiff/share/$f" "/host/usr/local/share/skiff/$f" 0644
done

out=$(/skiff/bin/skiff install --for "$SKIFF_RUNTIME" --prefix /host --binary /usr/local/bin/skiff)
echo "$out"
if echo "$out" | grep -Eq '^(created|updated) '; then
	echo "skiff-installer: restarting $SKIFF_RUNTIME to load the skiff runtime"
	nsenter -t 1 -m -u -i -n -p -- systemctl restart "$SKIFF_RUNTIME"
fi

# Label the node ready only once skiff check passes in the host's
# namespaces; until then pods with runtimeClassName: skiff go elsewhere.
label() { # VALUE (JSON: "true" or null)
	sa=/var/run/secrets/kubernetes.io/serviceaccount
	curl -sS --fail -o /dev/null --cacert "$sa/ca.crt" \
		-H "Authorization: Bearer $(cat "$sa/token")" \
		-H "Content-Type: application/merge-patch+json" \
		-X PATCH --data "{\"metadata\":{\"labels\":{\"skiff.io/ready\":$1}}}" \
		"https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/nodes/$NODE_NAME"
}
while :; do
	if nsenter -t 1 -m -u -i -n -p -- /usr/local/bin/skiff check; then
		label '"true"' && echo "skiff-installer: node $NODE_NAME labelled skiff.io/ready=true"
		break
	fi
	label null || true
	echo "skiff-installer: skiff check failed on $NODE_NAME (fixes above); retrying in 5 minutes" >&2
	sleep 300
done
exec sleep infinity
