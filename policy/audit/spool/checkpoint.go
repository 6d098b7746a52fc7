package spool

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// checkpointFile is the name of the checkpoint file in a spool directory.
const checkpointFile = "checkpoint"

// checkpointHeader is the first line of a checkpoint file, and the start of what is signed.
const checkpointHeader = "nirproxy-audit-checkpoint-v1"

// maxCheckpointBytes bounds what is read of a checkpoint file.
const maxCheckpointBytes = 4 << 10

// Checkpoint is a signed statement of the records retention has deleted: every record from 1
// to LastSeq. The spool's chain continues from it: the first record kept is LastSeq+1 and
// names LastHash as its prev.
type Checkpoint struct {
	// LastSeq and LastHash are the sequence number and hash of the last record deleted.
	LastSeq  uint64
	LastHash [32]byte
	// Records is how many records have been deleted in all (LastSeq), Segments how many
	// segment files.
	Records  uint64
	Segments uint64
	// FirstTime and LastTime are the times of the first and last records deleted.
	FirstTime, LastTime time.Time
	// Created is when the checkpoint was signed, by Options.Clock.
	Created time.Time
	// Key is the public key that signed it.
	Key ed25519.PublicKey
}

// KeyFingerprint is the SHA-256 of the signing key's PKIX (SubjectPublicKeyInfo) DER form in
// hexadecimal, as `openssl pkey -pubin -outform DER | sha256sum` prints it.
func (cp *Checkpoint) KeyFingerprint() string { return Fingerprint(cp.Key) }

// Fingerprint is the SHA-256 of key's PKIX DER form, in hexadecimal.
func Fingerprint(key ed25519.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil { // only for a key of the wrong length
		return ""
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// statement is the signed JSON line of a checkpoint file.
type statement struct {
	LastSeq   uint64 `json:"lastSeq"`
	LastHash  string `json:"lastHash"`
	Records   uint64 `json:"records"`
	Segments  uint64 `json:"segments"`
	FirstTime string `json:"firstTime"`
	LastTime  string `json:"lastTime"`
	Created   string `json:"created"`
	PublicKey string `json:"publicKey"`
	KeySHA256 string `json:"keySha256"`
}

// encodeCheckpoint lays out cp's file, signed with key (whose public half cp.Key must be).
func encodeCheckpoint(cp *Checkpoint, key ed25519.PrivateKey) []byte {
	st := statement{
		LastSeq: cp.LastSeq, LastHash: hex.EncodeToString(cp.LastHash[:]), Records: cp.Records, Segments: cp.Segments,
		FirstTime: cp.FirstTime.UTC().Format(time.RFC3339Nano), LastTime: cp.LastTime.UTC().Format(time.RFC3339Nano),
		Created:   cp.Created.UTC().Format(time.RFC3339Nano),
		PublicKey: base64.StdEncoding.EncodeToString(cp.Key), KeySHA256: cp.KeyFingerprint(),
	}
	line, _ := json.Marshal(st) // strings and numbers only
	signed := fmt.Appendf(nil, "%s\n%s\n", checkpointHeader, line)
	sig := ed25519.Sign(key, signed)
	return append(signed, base64.StdEncoding.EncodeToString(sig)+"\n"...)
}

// parseCheckpoint reads a checkpoint file and checks it against itself: its form, that its
// numbers agree, and that its signature holds for the key it names. It does not say whether
// that key is to be trusted: checkKey does.
func parseCheckpoint(data []byte) (*Checkpoint, error) {
	lines := bytes.Split(data, []byte("\n"))
	if len(lines) != 4 || string(lines[0]) != checkpointHeader || len(lines[3]) != 0 {
		return nil, errors.New("the checkpoint file is not three lines: " + checkpointHeader + ", a statement and a signature")
	}
	var st statement
	dec := json.NewDecoder(bytes.NewReader(lines[1]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("the checkpoint's statement cannot be read: %w", err)
	}
	cp := &Checkpoint{LastSeq: st.LastSeq, Records: st.Records, Segments: st.Segments}
	hash, err := hex.DecodeString(st.LastHash)
	if err != nil || len(hash) != len(cp.LastHash) {
		return nil, errors.New("the checkpoint's lastHash is not 64 hexadecimal digits")
	}
	copy(cp.LastHash[:], hash)
	for _, t := range []struct {
		dst  *time.Time
		text string
	}{{&cp.FirstTime, st.FirstTime}, {&cp.LastTime, st.LastTime}, {&cp.Created, st.Created}} {
		if *t.dst, err = time.Parse(time.RFC3339Nano, t.text); err != nil {
			return nil, fmt.Errorf("the checkpoint's time %q is not an RFC 3339 time", t.text)
		}
	}
	key, err := base64.StdEncoding.DecodeString(st.PublicKey)
	if err != nil || len(key) != ed25519.PublicKeySize {
		return nil, errors.New("the checkpoint's publicKey is not an Ed25519 public key in base64")
	}
	cp.Key = key
	sig, err := base64.StdEncoding.DecodeString(string(lines[2]))
	switch {
	case cp.LastSeq == 0 || cp.Records != cp.LastSeq || cp.Segments == 0 || cp.Segments > cp.Records:
		return nil, fmt.Errorf("the checkpoint's counts do not agree (lastSeq %d, records %d, segments %d)",
			cp.LastSeq, cp.Records, cp.Segments)
	case st.KeySHA256 != cp.KeyFingerprint():
		return nil, errors.New("the checkpoint's keySha256 is not the fingerprint of its publicKey")
	case err != nil || !ed25519.Verify(cp.Key, data[:len(lines[0])+len(lines[1])+2], sig):
		return nil, errors.New("the checkpoint's signature does not hold for the key it names (edited)")
	}
	return cp, nil
}

// checkKey reports whether cp was signed by key; the signature itself parseCheckpoint checked.
func (cp *Checkpoint) checkKey(key ed25519.PublicKey) error {
	if !cp.Key.Equal(key) {
		return fmt.Errorf("the checkpoint was signed by the key with fingerprint %s, not by the given key (%s): "+
			"replaced by someone without the key, or the wrong key was given", cp.KeyFingerprint(), Fingerprint(key))
	}
	return nil
}

// readCheckpoint reads dir's checkpoint; it returns nil, nil when there is none, and a problem
// (for a Break) when the file is there but cannot be trusted as it stands.
func readCheckpoint(fsys fileSystem, dir string) (cp *Checkpoint, problem string, err error) {
	f, err := fsys.OpenFile(filepath.Join(dir, checkpointFile), os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("open the checkpoint: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCheckpointBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("read the checkpoint: %w", err)
	}
	if len(data) > maxCheckpointBytes {
		return nil, "the checkpoint file is too large to be one", nil
	}
	cp, err = parseCheckpoint(data)
	if err != nil {
		return nil, err.Error(), nil
	}
	return cp, "", nil
}

// ParsePrivateKey reads an Ed25519 private key in PEM, PKCS#8 ("PRIVATE KEY"), as
// `openssl genpkey -algorithm ed25519` writes it: the key that signs checkpoints.
func ParsePrivateKey(pemData []byte) (ed25519.PrivateKey, error) {
	return parsePEM[ed25519.PrivateKey](pemData, "PRIVATE KEY", "checkpoint key", x509.ParsePKCS8PrivateKey)
}

// ParsePublicKey reads an Ed25519 public key in PEM, PKIX ("PUBLIC KEY"), as
// `openssl pkey -in KEY -pubout` writes it: the key that checks checkpoints.
func ParsePublicKey(pemData []byte) (ed25519.PublicKey, error) {
	return parsePEM[ed25519.PublicKey](pemData, "PUBLIC KEY", "checkpoint public key", x509.ParsePKIXPublicKey)
}

// parsePEM reads the first PEM block of pemData, which must be of type blockType, with parse,
// and returns the key if it is a K; what names the key in errors.
func parsePEM[K any](pemData []byte, blockType, what string, parse func([]byte) (any, error)) (K, error) {
	var none K
	block, _ := pem.Decode(pemData)
	if block == nil || block.Type != blockType {
		return none, fmt.Errorf("read the %s: not a PEM block of type %s", what, blockType)
	}
	key, err := parse(block.Bytes)
	if err != nil {
		return none, fmt.Errorf("read the %s: %w", what, err)
	}
	k, ok := key.(K)
	if !ok {
		return none, fmt.Errorf("read the %s: a %T, not an Ed25519 key", what, key)
	}
	return k, nil
}
