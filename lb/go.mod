module hits/lb

go 1.25.0

require github.com/joho/godotenv v1.5.1
