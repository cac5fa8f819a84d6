// Resolve credentials with one real JavaScript client and print what it got as one line of JSON:
//   node credentials.js imds|container|http|process|crt
// imds, container, http and process are providers of the AWS SDK for JavaScript v3
// (@aws-sdk/credential-providers); crt is aws-c-auth's default chain through the aws-crt package, which has
// no call that returns credentials, so it signs a dummy request and reports the access key id and session
// token that the signature carries. Where to look (endpoint, token, config file) comes from the environment
// that the test sets, exactly as in an application. Exit status 1 with the error on stderr on failure.
'use strict';

const TIMEOUT_MS = 20000;

async function sdk(kind) {
    const providers = require('@aws-sdk/credential-providers');
    const make = {
        imds: () => providers.fromInstanceMetadata({ timeout: 5000, maxRetries: 0 }),
        container: () => providers.fromContainerMetadata({ timeout: 5000, maxRetries: 0 }),
        http: () => providers.fromHttp({ timeout: 5000, maxRetries: 0 }),
        process: () => providers.fromProcess({ profile: process.env.RAD_JS_PROFILE || 'web' }),
    }[kind];
    const c = await make()();
    return {
        accessKeyId: c.accessKeyId,
        secretAccessKey: c.secretAccessKey,
        sessionToken: c.sessionToken,
        expiration: c.expiration ? c.expiration.toISOString() : null,
    };
}

async function crt() {
    const { auth, http } = require('aws-crt');
    const provider = auth.AwsCredentialsProvider.newDefault();
    const request = new http.HttpRequest('GET', '/', new http.HttpHeaders([['host', 'example.amazonaws.com']]));
    const signed = await auth.aws_sign_request(request, {
        algorithm: auth.AwsSigningAlgorithm.SigV4,
        signature_type: auth.AwsSignatureType.HttpRequestViaHeaders,
        provider,
        region: 'us-east-1',
        service: 'sts',
    });
    const authorization = signed.headers.get('authorization') || '';
    const credential = /Credential=([^/,\s]+)\//.exec(authorization);
    return {
        accessKeyId: credential ? credential[1] : null,
        sessionToken: signed.headers.get('x-amz-security-token') || null,
    };
}

async function main() {
    const kind = process.argv[2];
    if (!['imds', 'container', 'http', 'process', 'crt'].includes(kind)) {
        throw new Error(`usage: node credentials.js imds|container|http|process|crt (got ${kind})`);
    }
    const timer = setTimeout(() => {
        process.stderr.write(`credentials.js ${kind}: no answer within ${TIMEOUT_MS} ms\n`);
        process.exit(2);
    }, TIMEOUT_MS);
    const result = kind === 'crt' ? await crt() : await sdk(kind);
    clearTimeout(timer);
    process.stdout.write(JSON.stringify(result) + '\n');
}

main().then(
    () => process.exit(0),
    (error) => {
        process.stderr.write(`credentials.js: ${error && error.stack ? error.stack : error}\n`);
        process.exit(1);
    },
);
