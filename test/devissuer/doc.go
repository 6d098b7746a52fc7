// Package devissuer is a development OAuth 2.0 / OpenID Connect token issuer that runs in
// process on a loopback listener, for `nirproxy demo` and the tests. It is never for
// production: its signing key lives only in memory and dies with it, it serves plain HTTP,
// and it mints whatever claims it is asked to, including deliberately bad tokens. Start
// refuses any address that is not loopback.
//
// An Issuer makes an ephemeral signing key when it starts (ES256 by default, RS256 on
// request) named by a kid (its RFC 7638 thumbprint), and serves:
//
//	GET /.well-known/openid-configuration  discovery: issuer, jwks_uri, userinfo_endpoint
//	GET /jwks                              its published public keys
//	GET /userinfo                          the userinfo of a token it minted (Bearer)
//
// Its issuer string is its base URL exactly, as URL returns it ("http://127.0.0.1:port",
// no trailing slash), so policy/authn can be pointed at it with Options.Discovery:
//
//	iss, _ := devissuer.Start("127.0.0.1:0", devissuer.Options{})
//	defer iss.Close()
//	token, _ := iss.Mint(devissuer.Claims{
//		Subject:  "user-1",
//		ClientID: "viewer",
//		IUA: &devissuer.IUA{
//			SubjectOrganizationID: "RYJ",
//			SubjectRole:           []devissuer.Coding{{Code: "R8000"}},
//			PurposeOfUse:          []devissuer.Coding{devissuer.PurposeOfUse("TREAT")},
//		},
//	})
//
// # Claims
//
// Claims covers the profiles policy/authn reads: IHE IUA (extensions.ihe_iua and
// client_id), NHS CIS2 (selected_roleid, nhsid_nrbac_roles, nhsid_useruid,
// id_assurance_level, acr, amr; the roles and user id can be left out of the token so that
// a verifier must ask /userinfo for them) and plain top-level claims (Claims.Extra). The
// registered claims (iss, sub, aud, exp, nbf, iat, jti) are filled in from Options and the
// issuer's clock unless Claims sets them.
//
// # Tests
//
// The Mint... helpers make deliberately bad tokens so that tests never hand-craft a JWT:
// MintExpired, MintNotYetValid, MintWrongAudience, MintWrongIssuer, MintAlgNone (alg
// "none"), MintUnknownKey (a key the JWKS never published, under its own kid), MintForged (a
// key the JWKS never published, under the issuer's current kid) and MintKeyConfusion (HS256
// keyed with the issuer's public key). Rotate replaces the signing key, keeping the old one
// published or dropping it; SetDown makes the JWKS and discovery answer 503, as an issuer
// outage does (hazard H16); Requests counts what each endpoint was asked. Options.Clock
// injects the clock tokens are dated by, so that it can be the verifier's clock too.
package devissuer
