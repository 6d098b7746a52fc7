package devissuer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// Signature algorithms an Issuer signs with.
const (
	// ES256 is ECDSA on P-256 with SHA-256.
	ES256 = "ES256"
	// RS256 is RSASSA-PKCS1-v1_5 with SHA-256, on a 2048-bit key.
	RS256 = "RS256"
)

// rsaBits is the size of the RSA keys made for RS256.
const rsaBits = 2048

// signingKey is a key pair an Issuer signs with.
type signingKey struct {
	kid     string
	alg     jwa.SignatureAlgorithm
	private any     // the raw private key, so that only the kid the issuer chooses reaches a header
	public  jwk.Key // as published: kid, alg and use "sig" set
}

// newSigningKey makes a key pair for alg (ES256 or RS256) named by its RFC 7638 thumbprint.
func newSigningKey(alg string) (*signingKey, error) {
	var raw any
	var err error
	var sa jwa.SignatureAlgorithm
	switch alg {
	case ES256:
		sa = jwa.ES256()
		raw, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RS256:
		sa = jwa.RS256()
		raw, err = rsa.GenerateKey(rand.Reader, rsaBits)
	default:
		return nil, fmt.Errorf("make a signing key: algorithm %q is neither %s nor %s", alg, ES256, RS256)
	}
	if err != nil {
		return nil, fmt.Errorf("make a %s signing key: %w", alg, err)
	}
	private, err := jwk.Import(raw)
	if err != nil {
		return nil, fmt.Errorf("make a %s signing key: %w", alg, err)
	}
	public, err := jwk.PublicKeyOf(private)
	if err != nil {
		return nil, fmt.Errorf("make a %s signing key: %w", alg, err)
	}
	if err := jwk.AssignKeyID(public); err != nil {
		return nil, fmt.Errorf("name a %s signing key: %w", alg, err)
	}
	kid, _ := public.KeyID()
	for name, v := range map[string]any{jwk.AlgorithmKey: sa, jwk.KeyUsageKey: jwk.ForSignature} {
		if err := public.Set(name, v); err != nil {
			return nil, fmt.Errorf("describe a %s signing key: %w", alg, err)
		}
	}
	return &signingKey{kid: kid, alg: sa, private: raw, public: public}, nil
}
