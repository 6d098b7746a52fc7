package devaccess

import (
	"fmt"
	"io"
)

// WriteExports writes, for every persona, a comment saying who it is (and the headers its
// requests must send) and a shell line exporting its token as Var.
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
		if _, err := fmt.Fprintf(w, "export %s='%s'\n", p.Var, t); err != nil {
			return fmt.Errorf("write %s's token: %w", p.Name, err)
		}
	}
	return nil
}
