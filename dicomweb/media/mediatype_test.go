package media

import "testing"

func BenchmarkParseAccept(b *testing.B) {
	const accept = `multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50;q=0.9, ` +
		`multipart/related; type=application/dicom; transfer-syntax=*;q=0.5, application/dicom+json, */*;q=0.1`
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseAccept(accept); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseMediaType(b *testing.B) {
	const contentType = `multipart/related; type="application/dicom"; boundary=3d6b6a416f9b5e6e`
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseMediaType(contentType); err != nil {
			b.Fatal(err)
		}
	}
}
