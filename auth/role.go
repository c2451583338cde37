package auth

// Role is a level of access; roles are cumulative, each including the ones below it.
type Role int

// The roles, lowest first. RoleNone is a caller without any known role.
const (
	RoleNone Role = iota
	RoleViewer
	RoleEditor
	RoleAdmin
)

// ParseRole maps a role name from a token; unknown names give RoleNone and are ignored.
func ParseRole(name string) Role {
	switch name {
	case "viewer":
		return RoleViewer
	case "editor":
		return RoleEditor
	case "admin":
		return RoleAdmin
	}
	return RoleNone
}

func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RoleEditor:
		return "editor"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}
