package orthanc

import (
	"testing"

	"github.com/nirproxy/nirproxy/cmd/nirproxy/config"
	"github.com/nirproxy/nirproxy/test/devaccess"
)

// TestProxyConfigIsValid checks that the configuration StartProxy writes is one the proxy
// accepts: a test trust on plain http says insecure: true, which an https one need not.
func TestProxyConfigIsValid(t *testing.T) {
	dir := t.TempDir()
	acc, err := devaccess.Start(devaccess.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer acc.Close()
	p := &Proxy{dir: dir, Addr: "127.0.0.1:8080", access: acc}
	err = p.writeConfig(ProxyOptions{Sources: []ProxySource{
		{ID: "ORA", Name: "Orthanc A", URL: "http://127.0.0.1:8042/dicom-web"},
		{ID: "ORB", Name: "Orthanc B", URL: "https://127.0.0.1:8043/dicom-web"},
	}}, "127.0.0.1:9091")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadValid(p.ConfigPath, nil)
	if err != nil {
		t.Fatalf("the proxy refuses the configuration written: %v", err)
	}
	if !cfg.Sources[0].Insecure || cfg.Sources[1].Insecure {
		t.Errorf("insecure = %v, %v; want true for plain http only", cfg.Sources[0].Insecure, cfg.Sources[1].Insecure)
	}
}
