package integration_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/test/devaccess"
	"github.com/nirproxy/nirproxy/test/orthanc"
)

// TestDicomwebClientConformance runs test/conformance (the npm dicomweb-client library under
// `node --test`) against the proxy TestMain started.
func TestDicomwebClientConformance(t *testing.T) {
	m := needProxy(t)
	root, err := orthanc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "test", "conformance")
	node, err := exec.LookPath("node")
	if err != nil {
		orthanc.SkipOrFail(t, fmt.Errorf("node (Node.js 20) is not installed: %w", err))
	}
	for _, pkg := range []string{"dicomweb-client", "xhr2"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json")); err != nil {
			orthanc.SkipOrFail(t, fmt.Errorf("npm package %s is not installed in %s (run test/scripts/install-deps.sh or npm ci there)", pkg, dir))
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "conformance.test.js")
	cmd.Dir = dir
	token, err := fx.proxy.Access().Token(devaccess.Clinician)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(),
		"NIRPROXY_URL="+fx.proxy.URL,
		"NIRPROXY_TOKEN="+token,
		"NIRPROXY_MANIFEST="+filepath.Join(m.Dir, "manifest.json"),
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("node --test failed (%v):\n%s", err, out)
		}
		t.Fatalf("run node --test: %v\n%s", err, out)
	}
	t.Logf("node --test:\n%s", out)
}
