module hits/lb

go 1.26.0

require (
	github.com/joho/godotenv v1.5.1
	github.com/pires/go-proxyproto v0.15.0
)

require (
	golang.org/x/crypto v0.59.0 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/text v0.44.0 // indirect
)
