package identity

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"github.com/switchyard/switchyard/hitch"
	"golang.org/x/crypto/bcrypt"
)

// Paths the service serves.
const (
	PathRegister = "/v1/auth/register"
	PathLogin    = "/v1/auth/login"
	PathJWKS     = "/.well-known/jwks.json"
	PathHealth   = "/healthz"
)

// Handler serves the public API:
//
//	POST /v1/auth/register {role, name, email, password} -> 201 {id}
//	POST /v1/auth/login {email, password}                -> 200 {token, expires_at}
//	GET  /.well-known/jwks.json                           -> the JWKS
//	GET  /healthz                                         -> 200 when the database answers
//
// Errors are JSON {"error", "code"}.
func (s *Service) Handler() http.Handler {
	type route struct {
		method string
		h      func(http.ResponseWriter, *http.Request)
	}
	routes := map[string]route{
		PathRegister: {http.MethodPost, s.register},
		PathLogin:    {http.MethodPost, s.login},
		PathJWKS:     {http.MethodGet, s.serveJWKS},
		PathHealth:   {http.MethodGet, s.health},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt, ok := routes[r.URL.Path]
		switch {
		case !ok:
			writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no such path %q", truncate(r.URL.Path)))
		case r.Method != rt.method && !(rt.method == http.MethodGet && r.Method == http.MethodHead):
			w.Header().Set("Allow", rt.method)
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("%s %s: expected %s", r.Method, r.URL.Path, rt.method))
		default:
			rt.h(w, r)
		}
	})
}

type registerRequest struct {
	Role     string `json:"role"`
	Name     string `json:"name"`
	Email    string `json:"email"`
	Password string `json:"password"`
}

type loginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

func (s *Service) register(w http.ResponseWriter, r *http.Request) {
	var req registerRequest
	if !s.decode(w, r, &req) {
		return
	}
	email, err := checkRegistration(&req)
	if err != nil {
		var fe *fieldError
		errors.As(err, &fe)
		writeError(w, http.StatusBadRequest, "invalid_"+fe.field, err.Error())
		return
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(req.Password), s.cfg.BcryptCost)
	if err != nil {
		s.internal(w, "hashing a password", err)
		return
	}
	u := user{ID: newID(), Email: email, Name: req.Name, Role: req.Role, Hash: string(hash)}
	switch err := s.insertUser(r.Context(), u); {
	case errors.Is(err, errDuplicate):
		writeError(w, http.StatusConflict, "email_taken", "email: already registered")
		return
	case err != nil:
		s.internal(w, "storing a user", err)
		return
	}
	s.cfg.Logger.Info("identity: registered", "user", u.ID, "role", u.Role)
	writeJSON(w, http.StatusCreated, map[string]string{"id": u.ID})
}

func (s *Service) login(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if !s.decode(w, r, &req) {
		return
	}
	if req.Email == "" {
		writeError(w, http.StatusBadRequest, "invalid_email", "email: missing")
		return
	}
	if req.Password == "" {
		writeError(w, http.StatusBadRequest, "invalid_password", "password: missing")
		return
	}
	if len(req.Email) > MaxEmail || len(req.Password) > MaxPassword {
		// Nobody registered with these: the same answer as a wrong password.
		writeError(w, http.StatusUnauthorized, "invalid_credentials", "wrong email or password")
		return
	}
	email := strings.ToLower(strings.TrimSpace(req.Email))
	ctx := r.Context()
	until, err := s.lockedUntil(ctx, email)
	if err != nil {
		s.internal(w, "reading login failures", err)
		return
	}
	if !until.IsZero() {
		secs := int(until.Sub(s.cfg.Now()).Seconds()) + 1
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeError(w, http.StatusTooManyRequests, "too_many_attempts",
			fmt.Sprintf("too many failed logins for this email: try again in %ds", secs))
		return
	}
	u, found, err := s.userByEmail(ctx, email)
	if err != nil {
		s.internal(w, "reading a user", err)
		return
	}
	hash := s.dummy // the same bcrypt work whether or not the user exists
	if found {
		hash = []byte(u.Hash)
	}
	if compareHash(hash, []byte(req.Password)) != nil || !found {
		if err := s.recordFailure(ctx, email); err != nil {
			s.internal(w, "recording a login failure", err)
			return
		}
		writeError(w, http.StatusUnauthorized, "invalid_credentials", "wrong email or password")
		return
	}
	if err := s.clearFailures(ctx, email); err != nil {
		s.internal(w, "clearing login failures", err)
		return
	}
	token, exp, err := s.Issue(u.ID, u.Role)
	if err != nil {
		s.internal(w, "signing a token", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"token": token, "expires_at": exp.UTC().Format(time.RFC3339)})
}

// Issue signs a token for user id with role as its scope.
func (s *Service) Issue(id, role string) (string, time.Time, error) {
	now := s.cfg.Now()
	exp := now.Add(s.cfg.TokenTTL)
	claims := jwt.MapClaims{
		"sub":   id,
		"scope": role,
		"iss":   s.cfg.Issuer,
		"aud":   []string{Audience},
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"exp":   exp.Unix(),
		"jti":   newID(),
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = s.kid
	signed, err := t.SignedString(s.key)
	return signed, exp, err
}

func (s *Service) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(s.jwks)
}

func (s *Service) health(w http.ResponseWriter, r *http.Request) {
	if err := s.db.PingContext(r.Context()); err != nil {
		writeError(w, http.StatusServiceUnavailable, "database_unavailable", "database: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Service) internal(w http.ResponseWriter, step string, err error) {
	s.cfg.Logger.Error("identity: "+step, "err", err)
	writeError(w, http.StatusInternalServerError, "internal", step+" failed")
}

// decode reads a JSON object of at most MaxBody bytes into v, strictly: an
// unknown field, a field of the wrong type, or anything after the object is
// a 400 naming it. It answers the request itself when it returns false.
func (s *Service) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body over %d bytes", s.cfg.MaxBody))
			return false
		}
		writeError(w, http.StatusBadRequest, "bad_body", "reading the body: "+err.Error())
		return false
	}
	if err := decodeStrict(body, v); err != nil {
		writeError(w, http.StatusBadRequest, "bad_json", err.Error())
		return false
	}
	return true
}

// decodeStrict decodes one JSON object into v, naming what is wrong.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typ *json.UnmarshalTypeError
		var syn *json.SyntaxError
		switch {
		case errors.Is(err, io.EOF):
			return errors.New("empty body: expected a JSON object")
		case errors.As(err, &typ):
			return fmt.Errorf("field %q: got JSON %s, expected %s", typ.Field, typ.Value, typ.Type)
		case errors.As(err, &syn):
			return fmt.Errorf("invalid JSON at byte %d: %v", syn.Offset, err)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return fmt.Errorf("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		}
		return fmt.Errorf("invalid JSON: %v", err)
	}
	if dec.More() {
		return errors.New("invalid JSON: data after the object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("invalid JSON: data after the object")
	}
	return nil
}

// fieldError is a bad field of a request.
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

// checkRegistration validates req and returns the normalized (lower-case)
// email.
func checkRegistration(req *registerRequest) (string, error) {
	bad := func(field, format string, args ...any) error {
		return &fieldError{field, fmt.Sprintf(format, args...)}
	}
	if req.Role != hitch.RoleRider && req.Role != hitch.RoleDriver {
		return "", bad("role", "%q: expected rider or driver", truncate(req.Role))
	}
	name := strings.TrimSpace(req.Name)
	switch {
	case name == "":
		return "", bad("name", "missing")
	case !utf8.ValidString(name):
		return "", bad("name", "not valid UTF-8")
	case utf8.RuneCountInString(name) > MaxName:
		return "", bad("name", "longer than %d characters", MaxName)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return "", bad("name", "contains control characters")
	}
	req.Name = name
	email := strings.ToLower(strings.TrimSpace(req.Email))
	if email == "" {
		return "", bad("email", "missing")
	}
	if len(email) > MaxEmail {
		return "", bad("email", "longer than %d bytes", MaxEmail)
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || addr.Name != "" || !strings.Contains(email[strings.LastIndexByte(email, '@')+1:], ".") {
		return "", bad("email", "%q: expected an address such as ann@example.com", truncate(req.Email))
	}
	switch n := len(req.Password); {
	case n < MinPassword:
		return "", bad("password", "shorter than %d bytes", MinPassword)
	case n > MaxPassword:
		return "", bad("password", "longer than %d bytes", MaxPassword)
	}
	return email, nil
}

// truncate shortens an echoed value so an error stays readable.
func truncate(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "..."
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": msg, "code": code})
}
