package devissuer

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// flawMargin is how far a bad token's exp or nbf is from now: far beyond any clock skew a
// verifier accepts (policy/authn accepts at most five minutes).
const flawMargin = time.Hour

// wrongAudience is the aud of MintWrongAudience's tokens.
const wrongAudience = "devissuer-wrong-audience"

// flaw is what is deliberately wrong with a minted token.
type flaw int

const (
	sound flaw = iota
	expired
	notYetValid
	audienceWrong
	issuerWrong
	algNone
	unknownKey
	forged
	keyConfusion
)

// signedByIssuer reports whether a token with flaw f is signed with the issuer's current
// key, as its own tokens are.
func (f flaw) signedByIssuer() bool {
	switch f {
	case sound, expired, notYetValid, audienceWrong, issuerWrong:
		return true
	}
	return false
}

// Mint returns a compact JWS of c signed with the issuer's current key, its header naming
// the key's kid and typ "JWT". Its userinfo is answered at UserinfoPath until it expires.
func (iss *Issuer) Mint(c Claims) (string, error) { return iss.mint(c, sound) }

// MintExpired is Mint with exp an hour ago (and iat and nbf two hours ago), whatever c says.
func (iss *Issuer) MintExpired(c Claims) (string, error) { return iss.mint(c, expired) }

// MintNotYetValid is Mint with nbf an hour from now (and exp one Lifetime later), whatever c
// says.
func (iss *Issuer) MintNotYetValid(c Claims) (string, error) { return iss.mint(c, notYetValid) }

// MintWrongAudience is Mint with aud "devissuer-wrong-audience", whatever c says.
func (iss *Issuer) MintWrongAudience(c Claims) (string, error) {
	return iss.mint(c, audienceWrong)
}

// MintWrongIssuer is Mint with iss the issuer's URL followed by "/": a string that differs
// only by its trailing slash, which an exact comparison refuses.
func (iss *Issuer) MintWrongIssuer(c Claims) (string, error) { return iss.mint(c, issuerWrong) }

// MintAlgNone returns an unsecured JWT (alg "none", empty signature) of c, naming the
// current kid.
func (iss *Issuer) MintAlgNone(c Claims) (string, error) { return iss.mint(c, algNone) }

// MintUnknownKey returns a token of c signed with a key of the issuer's algorithm that the
// JWKS never publishes, naming that key's own kid.
func (iss *Issuer) MintUnknownKey(c Claims) (string, error) { return iss.mint(c, unknownKey) }

// MintForged returns a token of c signed with a key the JWKS never publishes but naming the
// current kid, so that its signature does not verify with the key it names.
func (iss *Issuer) MintForged(c Claims) (string, error) { return iss.mint(c, forged) }

// MintKeyConfusion returns a token of c with alg HS256, its HMAC keyed with the PEM of the
// current public key and naming the current kid: the attack on verifiers that let a token
// choose to use a public key as an HMAC secret.
func (iss *Issuer) MintKeyConfusion(c Claims) (string, error) {
	return iss.mint(c, keyConfusion)
}

// mint makes a token of c with flaw f. Tokens signed with the issuer's own key have their
// userinfo remembered.
func (iss *Issuer) mint(c Claims, f flaw) (string, error) {
	now := iss.opts.Clock()
	issuer := iss.url
	if f == issuerWrong {
		issuer += "/"
	}
	claims, info, err := c.payload(issuer, iss.opts, now)
	if err != nil {
		return "", err
	}
	switch f {
	case expired:
		claims["iat"], claims["nbf"] = now.Add(-2*flawMargin).Unix(), now.Add(-2*flawMargin).Unix()
		claims["exp"] = now.Add(-flawMargin).Unix()
	case notYetValid:
		claims["iat"], claims["nbf"] = now.Unix(), now.Add(flawMargin).Unix()
		claims["exp"] = now.Add(flawMargin + iss.opts.Lifetime).Unix()
	case audienceWrong:
		claims["aud"] = []string{wrongAudience}
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("mint a token: %w", err)
	}
	iss.mu.Lock()
	key := iss.key
	iss.mu.Unlock()
	var token []byte
	switch f {
	case algNone:
		token, err = jws.Sign(payload, jws.WithInsecureNoSignature(jws.WithProtectedHeaders(header(key.kid))))
	case keyConfusion:
		var secret []byte
		if secret, err = jwk.EncodePEM(key.public); err == nil {
			token, err = jws.Sign(payload, jws.WithKey(jwa.HS256(), secret, jws.WithProtectedHeaders(header(key.kid))))
		}
	case unknownKey, forged:
		var s *signingKey
		if s, err = iss.strangerKey(); err == nil {
			kid := s.kid
			if f == forged {
				kid = key.kid
			}
			token, err = sign(payload, s, kid)
		}
	default:
		token, err = sign(payload, key, key.kid)
	}
	if err != nil {
		return "", fmt.Errorf("mint a token: %w", err)
	}
	if f.signedByIssuer() {
		body, err := json.Marshal(info)
		if err != nil {
			return "", fmt.Errorf("mint a token: %w", err)
		}
		exp, _ := claims["exp"].(int64)
		iss.remember(string(token), body, time.Unix(exp, 0))
	}
	return string(token), nil
}

// sign returns payload signed with key, its header naming kid.
func sign(payload []byte, key *signingKey, kid string) ([]byte, error) {
	return jws.Sign(payload, jws.WithKey(key.alg, key.private, jws.WithProtectedHeaders(header(kid))))
}

// header returns protected headers naming kid, with typ "JWT".
func header(kid string) jws.Headers {
	h := jws.NewHeaders()
	_ = h.Set(jws.KeyIDKey, kid)  // a string: cannot fail
	_ = h.Set(jws.TypeKey, "JWT") // likewise
	return h
}

// strangerKey returns the issuer's never-published key, making it the first time.
func (iss *Issuer) strangerKey() (*signingKey, error) {
	iss.mu.Lock()
	s := iss.stranger
	iss.mu.Unlock()
	if s != nil {
		return s, nil
	}
	s, err := newSigningKey(iss.opts.Algorithm) // outside the lock: an RSA key takes a while
	if err != nil {
		return nil, err
	}
	iss.mu.Lock()
	defer iss.mu.Unlock()
	if iss.stranger == nil {
		iss.stranger = s
	}
	return iss.stranger, nil
}
