module hits/lb

go 1.26.0

require (
	github.com/joho/godotenv v1.5.1
	github.com/pires/go-proxyproto v0.15.0
)
