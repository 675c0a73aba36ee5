package config

// API settings of `walhook api` (package internal/api): the HTTP admin API, the event catalog
// and the web console. Call SetDefaults (or Config's) to fill unset fields.
type API struct {
	// Listen is the address `walhook api` serves on. Env: WALHOOK_API_LISTEN. Default
	// "127.0.0.1:8089" (walhook dev: a free port).
	Listen string `yaml:"listen"`
	// MaxBodyBytes is the largest request body accepted; larger ones are refused with 413.
	// Default 65536.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// RateLimit is the requests per second allowed per API key (and per client address for
	// requests without a valid key). Default 20.
	RateLimit float64 `yaml:"rate_limit"`
	// RateBurst is the burst of the rate limit. Default 2 × RateLimit.
	RateBurst int `yaml:"rate_burst"`
	// LogSize is how many deliveries, and how many dead letters, the API keeps in memory from
	// the attempt-log and dead-letter topics for its delivery log (newest kept). Default 20000.
	LogSize int `yaml:"log_size"`
}

// The API defaults.
const (
	DefaultAPIListen       = "127.0.0.1:8089"
	DefaultAPIMaxBodyBytes = 64 << 10
	DefaultAPIRateLimit    = 20
	DefaultAPILogSize      = 20000
)

// SetDefaults fills every unset API field with its default.
func (a *API) SetDefaults() {
	setString(&a.Listen, DefaultAPIListen)
	if a.MaxBodyBytes == 0 {
		a.MaxBodyBytes = DefaultAPIMaxBodyBytes
	}
	if a.RateLimit == 0 {
		a.RateLimit = DefaultAPIRateLimit
	}
	if a.RateBurst == 0 {
		a.RateBurst = max(1, int(2*a.RateLimit))
	}
	setInt(&a.LogSize, DefaultAPILogSize)
}

func (v *checker) api(a *API) {
	if msg := checkListen(a.Listen); a.Listen == "" || msg != "" {
		if a.Listen == "" {
			msg = "is empty"
		}
		v.add("api.listen", "%q %s; write host:port such as 127.0.0.1:8089 or :8089", a.Listen, msg)
	}
	if a.MaxBodyBytes < 1024 {
		v.add("api.max_body_bytes", "%d is too small for a request; use at least 1024 (default %d)", a.MaxBodyBytes, DefaultAPIMaxBodyBytes)
	}
	if a.RateLimit <= 0 {
		v.add("api.rate_limit", "%g must be positive (requests per second per key; default %d)", a.RateLimit, DefaultAPIRateLimit)
	}
	if a.RateBurst < 1 {
		v.add("api.rate_burst", "%d must be at least 1", a.RateBurst)
	}
	if a.LogSize < 1 {
		v.add("api.log_size", "%d must be at least 1 (default %d)", a.LogSize, DefaultAPILogSize)
	}
}
