// Package pacssim simulates the PACS of sample trusts: small but honest DICOMweb origins
// (PS3.18 QIDO-RS and WADO-RS) over synthetic studies with real pixel data, written with
// suyashkumar/dicom. `nirproxy demo` runs three of them (DemoTrusts) and the proxy's tests
// use them as upstreams, each behind an httptest server:
//
//	trusts, _ := pacssim.DemoTrusts()
//	srv := httptest.NewServer(trusts[0].Handler()) // DICOMweb root: srv.URL + "/dicom-web"
//
// A Trust behaves like Orthanc with its DICOMweb plugin where a proxy would notice: unknown
// search keys are ignored, an unknown study is [] on search and 404 on retrieve, RetrieveURL
// and BulkDataURI are absolute URLs built from the request's Host (or Forwarded) header,
// thumbnails are 404 unless enabled, and writes are refused (405). Errors are JSON bodies
// shaped like Orthanc's. Only Explicit VR Little Endian is stored and served; asking for
// another transfer syntax gets 406.
//
// # The demo
//
//	trust  NHS number kept in               studies
//	XA1    PatientID                        Alice: CT head (2 series); MR knee, series 1-2
//	XB2    PatientID (thumbnails on)        Alice: MR knee, series 1-3; CR chest
//	                                        Bob:   CT chest; CR chest
//	XC3    OtherPatientIDsSequence ("NHS")  Alice: US abdomen (RGB, multi-frame cine); DX hand
//
// Alice is 9434765919 (DEMO^ALICE, MRN12345 at XC3), Bob 9449306052 (DEMO^BOB). The MR
// knee (DemoSharedStudyUID) is one study held at two trusts whose copies differ, so a proxy
// must union them. The Demo... constants name every study and the UIDs tests need.
//
// # Differing copies
//
// CopiesTrusts makes two more trusts, XD4 and XE5, holding copies of one study
// (CopiesStudyUID, patient 9990012342) that overlap and differ with neither holding the
// other: a series at both with different instances, a series the same at both, and a
// series only at each. A proxy answers it in full only by combining both copies. XE5 can
// cap its search answers (Options.SearchCap), as a PACS with a result limit does, so a
// proxy that does not page through searches misses instances only XE5 holds.
//
// # Tests and faults
//
// Trust.Requests and Trust.RequestsOf count what reached a trust, including requests a fault
// rejected. Trust.SetFaults (or Options.Faults, from the start) makes a trust misbehave, per
// kind of request if wanted: added latency, hanging, error statuses, 429 with Retry-After,
// connections reset mid-stream, multipart without its closing delimiter, every part sent
// twice, an instance left out of retrieves while searches list it, broken or foreign JSON,
// a wrong content type; any of them flapping, by request count or by an injected clock.
// Faults change at once while requests flow, and clearing them releases hung requests. A
// trust served with Trust.Start or Trust.Serve can also refuse connections
// (Trust.RefuseConnections), and accept them again on the same port:
//
//	url, stop, _ := trust.Start("127.0.0.1:0")
//	defer stop()
//	trust.SetFaults(pacssim.Latency(3*time.Second).Only(pacssim.KindSearch), pacssim.Status(500).Only(pacssim.KindRetrieve))
//	trust.RefuseConnections() // connecting to url now gets ECONNREFUSED
//	_ = trust.ClearFaults()   // normal answers, on the same url
//
// Trust.Wrap puts further middleware (checks, faults of a test's own) in front of its routes.
//
// # A hostile trust
//
// HostileTrusts makes XH6 and XI7, holding byte-identical copies of one study
// (HostileStudyUID, one series of two instances, thumbnails on): XH6 to be made hostile, XI7
// honest. Hostile faults send what a browser must never get from a proxy's origin:
// ActiveContent (an HTML page or an SVG with a <script>, or any wrong type), Relabel (the real
// answer under another Content-Type), ActiveParts (multipart/related whose parts are HTML),
// HostileHeaders (Set-Cookie, WWW-Authenticate, Access-Control-Allow-Origin, internal URLs in
// Location, Link and part headers: HostileResponseHeaders), InternalURLs (InternalHost URLs in
// RetrieveURL, RetrieveURI (0040,E010) and other UR values, at the top level and nested two
// sequences deep, BulkDataURIs at InternalHost and at a metadata service on
// InternalMetadataHost) and Oversized (DICOM JSON of a given size, streamed). Every answer is
// the same for the same request. HostileModes names each behaviour with the kinds of request
// it concerns, for tests (test/hostile runs the proxy against every mode and route) and for
// trying by hand:
//
//	hostile, honest, _ := pacssim.HostileTrusts()
//	for _, m := range pacssim.HostileModes() {
//		hostile.SetFaults(m.Faults...) // m.Name: "svg images", "html parts", "internal urls", ...
//	}
//
// # Reading order
//
// synth.go makes the DICOM files, demo.go and copies.go say which trust holds what,
// server.go routes requests and answers WADO-RS, qido.go answers searches, render.go draws
// rendered images, httputil.go holds content negotiation, errors and multipart writing,
// faults.go the faults and the listeners a trust can refuse, hostile.go the hostile trust.
package pacssim
