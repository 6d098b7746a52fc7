// Command maketestdata builds the integration data set (pydicom's test files relabelled with
// dcmodify for two test trusts) and prints the path of its manifest.
//
// Usage:
//
//	go run ./test/orthanc/cmd/maketestdata [-root DIR]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nirproxy/nirproxy/test/orthanc"
)

func main() {
	root := flag.String("root", orthanc.DefaultDataDir(), "directory under which data sets are built and cached")
	flag.Parse()
	m, err := orthanc.BuildDataSet(context.Background(), *root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "maketestdata:", err)
		os.Exit(1)
	}
	fmt.Println(filepath.Join(m.Dir, "manifest.json"))
}
