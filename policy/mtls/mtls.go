// Package mtls authenticates systems that call nirproxy on their own behalf, by the client
// certificate they present over mutual TLS.
//
// The listener's TLS verifies the certificate against the deployment's client CA bundle; this
// package only maps a verified certificate to the system the onboarding registry registers it
// to, by the SHA-256 fingerprint of its DER encoding (the registry's certificateSHA256). The
// registry in force is asked on every request, so a registry reloaded with a system added or
// removed takes effect at once. A certificate the listener did not verify is never looked up.
package mtls

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"

	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/policy/authz"
)

// Authenticator maps a verified client certificate to the system registered to it. It
// implements policy.Authenticator and is safe for concurrent use.
type Authenticator struct {
	registries authz.RegistrySource
}

var _ policy.Authenticator = (*Authenticator)(nil)

// New returns an Authenticator over the registry registries has in force at each request.
func New(registries authz.RegistrySource) (*Authenticator, error) {
	if registries == nil {
		return nil, errors.New("make certificate authenticator: a registry source is needed")
	}
	return &Authenticator{registries: registries}, nil
}

// Verified reports whether r came over TLS with a client certificate the listener verified
// against its client CA bundle.
func Verified(r *http.Request) bool {
	return r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.PeerCertificates) > 0
}

// Authenticate implements policy.Authenticator. A request with a verified client certificate
// registered to a system is that system calling on its own behalf: a principal with no Issuer
// whose Subject and System are the system's id, acting for its organisation, in its role and
// for its purpose, until the certificate expires. Anything else is refused with a
// *policy.Refusal of status 401 whose message says why; neither the certificate's subject
// (which may name a person) nor its fingerprint is in it.
func (a *Authenticator) Authenticate(r *http.Request) (policy.Principal, error) {
	if !Verified(r) {
		return policy.Principal{}, refuse("a verified client certificate is required")
	}
	leaf := r.TLS.PeerCertificates[0]
	sum := sha256.Sum256(leaf.Raw)
	sys, ok := a.registries.Registry().SystemByCertificate(hex.EncodeToString(sum[:]))
	if !ok {
		return policy.Principal{}, refuse("the client certificate is not registered to any system")
	}
	return policy.Principal{
		Subject:      sys.ID,
		System:       sys.ID,
		Organisation: sys.Organisation,
		Role:         sys.Role,
		Purpose:      sys.Purpose,
		Expires:      leaf.NotAfter,
	}, nil
}

// refuse is a refusal of authentication (401) with message.
func refuse(message string) error {
	return &policy.Refusal{Rule: authz.RuleAuthenticated, Status: http.StatusUnauthorized, Message: message}
}
