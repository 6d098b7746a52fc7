package authn

import (
	"context"
	"encoding/json"
	"errors"
	"slices"

	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// issuer is one configured token issuer: its options, its keys and its claim profile.
type issuer struct {
	opts    Options
	keys    *keySet
	profile profile
}

func newIssuer(life context.Context, o Options, cfg Config, ctrl httprc.Controller) *issuer {
	return &issuer{
		opts:    o,
		keys:    newKeySet(life, o, cfg, ctrl),
		profile: newProfile(o, cfg),
	}
}

// verifiedToken is a token whose signature and registered claims have been checked.
type verifiedToken struct {
	raw     string
	hash    tokenHash
	payload []byte                     // the verified claims, as signed
	claims  map[string]json.RawMessage // payload by claim name
	token   jwt.Token                  // payload's registered claims
}

// errAudience is the audience validator's refusal.
var errAudience = errors.New("no accepted audience")

// verify checks raw's signature with the key its kid names among its issuer's keys and
// the algorithm its header names, which must be on the issuer's allow-list and fit the
// key; then iss, aud, exp (required), nbf and iat with the issuer's clock skew.
func (a *Authenticator) verify(ctx context.Context, raw string) (*issuer, verifiedToken, error) {
	msg, err := jws.Parse([]byte(raw), jws.WithCompact())
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, verifiedToken{}, refuse("the token is not a signed JWT")
	}
	var unverified struct {
		Iss any `json:"iss"`
	}
	if json.Unmarshal(msg.Payload(), &unverified) != nil {
		return nil, verifiedToken{}, refuse("the token's claims are not a JSON object")
	}
	name, _ := unverified.Iss.(string)
	iss, ok := a.issuers[name]
	if !ok {
		return nil, verifiedToken{}, refuse("the token's issuer is not trusted")
	}
	hdr := msg.Signatures()[0].ProtectedHeaders()
	alg, ok := hdr.Algorithm()
	if !ok || !slices.Contains(iss.opts.Algorithms, alg.String()) {
		return nil, verifiedToken{}, refuse("the token's signature algorithm is not allowed for its issuer")
	}
	kid, ok := hdr.KeyID()
	if !ok || kid == "" {
		return nil, verifiedToken{}, refuse("the token names no signing key")
	}
	key, err := iss.keys.key(ctx, kid)
	if err != nil {
		return nil, verifiedToken{}, err
	}
	if !keyFits(key, alg) {
		return nil, verifiedToken{}, refuse("the token's signature algorithm does not fit its signing key")
	}
	a.signatureChecks.Add(1)
	payload, err := jws.Verify([]byte(raw),
		jws.WithKey(alg, key),
		jws.WithCompact(),
		jws.WithAlgorithmMatch(true),
		jws.WithCritValidation(true),
		jws.WithValidateKey(true))
	if err != nil {
		return nil, verifiedToken{}, refuse("the token's signature does not verify")
	}
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, verifiedToken{}, refuse("the token's claims are not a JSON object")
	}
	tok, err := jwt.Parse(payload,
		jwt.WithVerify(false), // verified above, with the checks jwt.Parse cannot be given
		jwt.WithValidate(true),
		jwt.WithClock(jwt.ClockFunc(a.clock)),
		jwt.WithAcceptableSkew(iss.opts.ClockSkew),
		jwt.WithIssuer(iss.opts.Issuer),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
		jwt.WithValidator(audienceIn(iss.opts.Audiences)))
	if err != nil {
		return nil, verifiedToken{}, refuse(validationReason(err))
	}
	return iss, verifiedToken{raw: raw, payload: payload, claims: claims, token: tok}, nil
}

// keyFits reports whether key may verify a signature made with alg: its type is the one
// alg needs, and its own alg and use, when it states them, agree.
func keyFits(key jwk.Key, alg jwa.SignatureAlgorithm) bool {
	want := jwa.RSA()
	if alg.String() == "ES256" {
		want = jwa.EC()
	}
	if key.KeyType() != want {
		return false
	}
	if ka, ok := key.Algorithm(); ok && ka.String() != alg.String() {
		return false
	}
	if use, ok := key.KeyUsage(); ok && use != "" && use != string(jwk.ForSignature) {
		return false
	}
	return true
}

// audienceIn accepts a token whose aud names at least one of audiences.
func audienceIn(audiences []string) jwt.Validator {
	return jwt.ValidatorFunc(func(_ context.Context, t jwt.Token) error {
		aud, _ := t.Audience()
		for _, a := range aud {
			if slices.Contains(audiences, a) {
				return nil
			}
		}
		return errAudience
	})
}

// validationReason names the registered claim check err failed, without its values.
func validationReason(err error) string {
	switch {
	case errors.Is(err, jwt.TokenExpiredError()):
		return "the token has expired"
	case errors.Is(err, jwt.TokenNotYetValidError()):
		return "the token is not valid yet"
	case errors.Is(err, jwt.InvalidIssuedAtError()):
		return "the token is issued in the future"
	case errors.Is(err, jwt.InvalidIssuerError()):
		return "the token's issuer does not match"
	case errors.Is(err, errAudience):
		return "the token is not meant for this service"
	case errors.Is(err, jwt.MissingRequiredClaimError()):
		return "the token has no expiry"
	}
	return "the token's registered claims are not valid"
}
