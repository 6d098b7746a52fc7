package devaccess

import (
	"fmt"
	"io"
	"strings"
)

// TokenVar is the shell variable persona p's token is exported as: NIR_TOKEN for the
// clinician, the one a developer uses most, and NIR_TOKEN_<what sets it apart> for the others,
// as nirproxy's demo names them.
func TokenVar(p Persona) string {
	switch p.Name {
	case Clinician.Name:
		return "NIR_TOKEN"
	case PrivacyOfficer.Name:
		return "NIR_TOKEN_PRIVACY"
	case Researcher.Name:
		return "NIR_TOKEN_RESEARCH"
	case LapsedClinician.Name:
		return "NIR_TOKEN_LAPSED"
	case BreakGlass.Name:
		return "NIR_TOKEN_BTG"
	}
	return "NIR_TOKEN_" + strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_"))
}

// WriteExports writes, for every persona, a comment saying who it is (and the headers its
// requests must send) and a shell line exporting its token as TokenVar names it.
func (a *Access) WriteExports(w io.Writer) error {
	for _, p := range Personas() {
		t, err := a.Token(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "# %s\n", p.Describe)
		for k, v := range p.Headers {
			fmt.Fprintf(w, "#   its requests also send -H '%s: %s'\n", k, v)
		}
		if _, err := fmt.Fprintf(w, "export %s='%s'\n", TokenVar(p), t); err != nil {
			return fmt.Errorf("write %s's token: %w", p.Name, err)
		}
	}
	return nil
}
