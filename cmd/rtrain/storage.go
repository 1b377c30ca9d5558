package main

import (
	"github.com/spf13/pflag"

	"github.com/rtrain/rtrain/checkpoint"
)

// addS3Flags adds the flags that override the S3 settings rtrain otherwise
// takes from the environment, as the AWS CLI does.
func addS3Flags(f *pflag.FlagSet, o *checkpoint.S3Options) {
	f.StringVar(&o.Endpoint, "s3-endpoint", "", "S3 endpoint URL, e.g. http://127.0.0.1:9000 (default $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else AWS)")
	f.StringVar(&o.Region, "s3-region", "", "S3 region (default $AWS_REGION, else asked of the server)")
	f.StringVar(&o.Profile, "s3-profile", "", "profile in ~/.aws/credentials (default $AWS_PROFILE)")
	f.StringVar(&o.AccessKey, "s3-access-key", "", "S3 access key (default $AWS_ACCESS_KEY_ID; prefer the environment or a profile)")
	f.StringVar(&o.SecretKey, "s3-secret-key", "", "S3 secret key (default $AWS_SECRET_ACCESS_KEY; prefer the environment or a profile)")
}
