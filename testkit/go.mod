module hits/testkit

go 1.26.0
